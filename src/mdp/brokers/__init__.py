"""Broker sources (Interactive Brokers): live ticks from a trading connection, with reconnect and backfill."""
