#![no_main]
sluice_fuzz::target!("group_offsets");
