"""The bodies of the larger ``llmos`` subcommands (``train``, ``predict``); :mod:`llmos_tf.cli` registers them."""
