#![no_main]
sluice_fuzz::target!("cluster_rpc");
