"""Agents that play symbolic Alchemy: replay of published events, bots, the ideal observer."""
