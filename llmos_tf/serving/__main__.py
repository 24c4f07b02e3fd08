"""``python -m llmos_tf.serving ...`` = ``llmos serve ...``."""
import sys

from llmos_tf.serving.cli import main

sys.exit(main())
