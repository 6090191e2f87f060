"""The demos: what ``nic-sandbox demo KIND`` runs, each given a built world and returning a report."""
