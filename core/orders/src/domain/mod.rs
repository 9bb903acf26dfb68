//! The order flow's domain: orders, payments, inventory and shipments, and how they connect.

pub mod inventory;
pub mod money;
pub mod order;
pub mod payment;
pub mod shipment;
pub mod stock;
pub mod types;

pub mod fixtures;

pub use inventory::{
    decide_with_stock, inventory_target, InventoryCommand, InventoryError, InventoryEvent,
    Reservation, ReservationStatus,
};
pub use money::{Currency, Money};
pub use order::{CreateOrder, Order, OrderCommand, OrderError, OrderEvent, OrderStatus};
pub use payment::{Payment, PaymentCommand, PaymentError, PaymentEvent, PaymentStatus};
pub use shipment::{Shipment, ShipmentCommand, ShipmentError, ShipmentEvent, ShipmentStatus};
pub use stock::{Stock, StockCommand, StockError, StockEvent, StockLevel};
pub use types::{Address, CancelReason, FieldError, Flow, OrderLine, RefundStatus, StockLine};
