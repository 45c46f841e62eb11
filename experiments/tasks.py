"""django-q2 entry points of the experiments: thin wrappers around their services."""

from experiments.services import experiments_auto_promote


def auto_promote_experiments() -> int:
    """Apply what the test decided in every running A/B test (the daily schedule); return how many moved.

    Does nothing unless ``AB_TEST_AUTO_PROMOTE`` is on: the setting is read when the task runs,
    so switching it needs no new schedule.
    """
    answers = experiments_auto_promote()
    return sum(1 for answer in answers if answer["action"] != "none")
