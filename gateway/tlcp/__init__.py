"""Sans-IO TLCP (GB/T 38636-2020): records, handshake messages, key schedule, client and server."""
