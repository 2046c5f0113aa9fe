"""Outages and network faults: PostgreSQL down, cut links in network namespaces, Sentinel failover."""
