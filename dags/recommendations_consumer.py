"""
### recommendations_consumer

An example downstream consumer: runs whenever `recommendations_daily` publishes (it is
scheduled on the `recommendations` Asset), and checks the table it receives before using
it: the expected columns, ranks 1..n per user, no item twice for a user, known strategies
and reasons. Each row says why it is there: `reason` (`recently_viewed`, `history_similar`,
`new_item_content`, `trending`, `popular`) and `reason_item_id` (the user's own item behind
a `recently_viewed` or `history_similar` row, e.g. "because you viewed …"; null otherwise).

Copy it as the starting point of a job that loads the table into a serving store.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task
from recpipe_airflow import RECOMMENDATIONS


@dag(
    dag_id="recommendations_consumer",
    schedule=[RECOMMENDATIONS],
    start_date=datetime(2024, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["recpipe", "example"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30), "execution_timeout": timedelta(minutes=10)},
)
def recommendations_consumer():
    @task
    def check_table(triggering_asset_events=None) -> dict:
        """The date comes with the Asset event (``extra.dt``); without one, the latest table."""
        from recpipe.stages import publish
        from recpipe_airflow import fail_fast_on_bad_data, store

        events = [e for evs in (triggering_asset_events or {}).values() for e in evs]
        dt = events[-1].extra.get("dt") if events else None
        with fail_fast_on_bad_data():
            return publish.check(store(), dt)

    check_table()


recommendations_consumer()
