"""Model families behind `taco.protocols.Classifier`; each config in conf/model/ builds one."""
