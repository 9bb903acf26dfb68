//! Prints the deployment's topology (`sagaflow_records::topology`) as JSON, the form
//! `infra/generate.py` and `infra/package.sh` read; `--binaries` prints one binary name a line.

fn main() {
    if std::env::args().any(|a| a == "--binaries") {
        for function in &sagaflow_records::topology::FUNCTIONS {
            println!("{}", function.binary);
        }
    } else {
        println!("{:#}", sagaflow_records::topology::to_json());
    }
}
