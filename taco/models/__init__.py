"""Model families, each a `taco.models.base.BaseClassifier`; each conf/model/ config builds one."""
