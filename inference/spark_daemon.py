"""A PySpark daemon that imports the scoring code once, before it forks its Python workers.

Spark starts one daemon per executor and forks a worker from it for each Python task; a fork
of this daemon starts with torch, transformers, ONNX Runtime and claimlens imported, instead
of spending seconds of CPU importing them again. ``claimlens batch`` uses it on local masters;
on a cluster, add ``--conf spark.python.daemon.module=inference.spark_daemon``.
"""

import contextlib
import importlib
import sys

# The daemon tells the executor its port on stdout: nothing an import prints may land there.
with contextlib.redirect_stdout(sys.stderr):
    for name in ("onnxruntime", "inference.predict", "inference.spark_batch"):
        importlib.import_module(name)

from pyspark import daemon

if __name__ == "__main__":
    daemon.manager()
