"""The contract's event types and their default weights (no dependencies: the DAG's trigger
form reads them when Airflow parses the DAG file)."""

#: The contract's event types. New types are appended (their position is their code in
#: the aggregates). A producer's own names map onto these with the ``event_type_map`` param.
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "rating", "favorite")

#: Default weight of each event type as implicit feedback (a purchase says more than a view);
#: the ``event_weights`` param overrides any of them. Popularity, interaction weights and the
#: ``recent`` heuristic sum these.
EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 4.0, "rating": 3.0, "favorite": 2.5}
