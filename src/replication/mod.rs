//! Master-master replication: peer links, handshake and authentication, frame codec, backlog,
//! full and incremental sync. (Lands with the replication issue.)
