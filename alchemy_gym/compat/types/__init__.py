"""dm_alchemy's ``dm_alchemy.types`` modules that code written against dm_alchemy imports."""
