#![no_main]
sluice_fuzz::target!("epoch_cache");
