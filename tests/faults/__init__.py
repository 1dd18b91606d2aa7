"""Fault and abuse scenarios (issue 10, KV2-AC-280..294).

Short forms run in the default ``pytest``; ``KV2RENDER_FULL_FAULTS=1`` selects the full
forms (500 kills, 30-minute run, 10,000 examples). See docs/testing.md.
"""
