"""Storage, one module per concern:

    objects     the S3 client: plain objects, conditional writes, errors mapped to recpipe's
    partitions  ``Store``: partitions that commit atomically through a manifest
    pointers    compare-and-swap pointers that only move forward in time
    landing     the producers' landing zone ``raw/``
    layout      every storage key and prefix (import it anywhere: it has no dependencies)
"""
