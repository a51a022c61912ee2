#![no_main]
sluice_fuzz::target!("record_batches");
