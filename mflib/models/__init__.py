"""mflib's models: one module per model (pure functions plus one estimator class), shared pieces in private
modules, and :mod:`mflib.models.registry`, the one list of which module holds which model and which are
reference solutions (left out of the student bundle).

This package imports nothing on purpose: the student bundle ships it without the reference modules.
"""
