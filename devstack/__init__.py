"""The embedded dev stack behind ``make up`` / ``make down`` (not part of the ``recpipe`` library).

``process``: spawning, pid files, waiting, stopping; ``seaweedfs``: the S3 server (``weed mini``);
``airflow``: Airflow's services and REST API; ``stack``: ``.local/``, the env file, up and down.
"""
