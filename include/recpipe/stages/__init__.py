"""The pipeline's stages, one package or module each, in the order they run:

    validate → features → train → evaluate → promote → publish

A stage reads what earlier stages committed (through ``recpipe.artifacts`` and
``recpipe.io``), never calls another stage, and commits its own output under the date's
partition. ``recpipe.pipeline`` runs them in order.
"""
