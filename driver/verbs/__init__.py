"""RDMA verbs over soft-RoCE (pyverbs): the device, a tenant's memory and the burst API over SEND work requests."""
