"""Model families: each config in conf/model/ builds one of these through Hydra."""
