"""Campaigns: rules for a while, for an audience, within budgets and limits."""
