"""The file to give ``spark-submit``: ``claimlens batch`` with the same options.

    spark-submit --master local[2] inference/spark_submit.py --model DIR --input IN --output OUT

spark-submit runs a Python *file*, not a module (``-m`` is not an option it has); this one
only hands its arguments to ``claimlens batch``, which takes the master from spark-submit.
"""

import sys
from pathlib import Path

# Run as a file, Python puts this folder first on the path, where our modules (model.py,
# labels.py, app.py, ...) would shadow any installed module of the same name.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from inference.cli import main

if __name__ == "__main__":
    sys.exit(main(["batch", *sys.argv[1:]]))
