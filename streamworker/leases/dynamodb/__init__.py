"""The KCL-compatible DynamoDB lease table: the table and its conditional writes, the coordinator
that holds leases (renewal, taking and balancing, creation, cleanup), and KCL 3's state beside it
(``kcl3``: its mode and whether a KCL 3 leader is alive)."""
