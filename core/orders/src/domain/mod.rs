//! The order flow's domain: orders, payments, inventory and shipments, and how they connect.

pub mod inventory;
pub mod money;
pub mod order;
pub mod payment;
pub mod shipment;
pub mod types;

pub mod fixtures;

pub use inventory::{Inventory, InventoryCommand, InventoryError, InventoryEvent, StockLevel};
pub use money::{Currency, Money};
pub use order::{CreateOrder, Order, OrderCommand, OrderError, OrderEvent, OrderStatus};
pub use payment::{Payment, PaymentCommand, PaymentError, PaymentEvent, PaymentStatus};
pub use shipment::{Shipment, ShipmentCommand, ShipmentError, ShipmentEvent, ShipmentStatus};
pub use types::{Address, CancelReason, FieldError, Flow, OrderLine, RefundStatus, StockLine};
