"""The domain: accounts, keys, channels, prices, the ledger and usage logs.

Imported by both the relay and the console; never reads the Flask request.
"""
