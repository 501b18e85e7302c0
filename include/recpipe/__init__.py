"""recpipe: a daily recommendation pipeline (quality gate → features → training → evaluation gate → publish).

The library has no Airflow imports: every stage is a plain function
``stage(ctx, run_date, params)`` over the object store, called alike by the CLI, the tests
and the thin DAG files in ``dags/``.
"""

__version__ = "0.1.0"
