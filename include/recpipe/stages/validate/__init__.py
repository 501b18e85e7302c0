"""The validate stage: the data-quality gate on a day of raw data (Great Expectations).

    check   row rules, batch rules, the split into clean/ and quarantine/
    suites  the GX expectation suites of the input contract
    drop    the row rules on one intraday drop (for the refresh)
    drift   the day against the previous 7: event-type mix, popularity, active and new ids
"""

from recpipe.stages.validate.check import ValidationResult, row_reasons, validate_events
from recpipe.stages.validate.drop import DropResult, validate_drop

__all__ = ["DropResult", "ValidationResult", "row_reasons", "validate_drop", "validate_events"]
