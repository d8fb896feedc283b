"""Everything that talks to MLflow, one concept per module; stages call it at their edges and no
core function imports mlflow. A stage imports only the modules it uses, so its DVC deps do too.

- ``location``: which store (config, $MLFLOW_TRACKING_URI or ``mlflow.db`` at the project root),
  whether its server answers, how a person opens it
- ``store``: the client of a store, its experiment, the lock on a new SQLite file
- ``provenance``: git commit, library versions, file fingerprints (the run's tags)
- ``runs``: a run's identity (``run.json``) and life: start or resume, log, finish, terminate
- ``inputs``: the prepared splits as the run's MLflow dataset inputs (name, digest, source)
- ``records``: what evaluate, explain and visualize hand to the publish stage, without MLflow
- ``models``: the trained network as an MLflow model
- ``queries``: reading runs back for the comparison page
- ``logger``: the Lightning logger of the train stage (Lightning's MLFlowLogger on the stage's run)

One MLflow run per trained model: the train stage creates it and writes its identity to
``run.json``; the publish stage logs the later stages' params, metrics, figures and the report
to that run by id.
"""
