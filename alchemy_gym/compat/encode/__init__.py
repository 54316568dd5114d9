"""dm_alchemy's ``dm_alchemy.encode`` module that loads the evaluation chemistries."""
