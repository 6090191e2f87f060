"""The kernel's gate in front of RDMA work requests: checks before the post, statuses after."""
