#![no_main]
sluice_fuzz::target!("partition_dir");
