"""Stage ``fim_property``: the FIM of the target properties (FIMPropertyScore).

Outputs in ``--out`` (outputs/fim_property), all or none: fim_property.json
(``fim_property_score`` P×P, ``jacobian``, property ``values``, parameter ``labels``,
``covariances``) and summary.json.
"""

from pathlib import Path

from pipeline.core.atomic import staged
from pipeline.core.outputs import FIM_PROPERTY_SCORE
from pipeline.core.timing import Timers
from pipeline.models import parameters
from pipeline.scores.property_fim import property_fim
from stages.common import as_dict, json_bytes, stage_main, write_summary
from stages.models import derivative_of, potential_of, targets_of, transform_of
from stages.schema import Config

OUTPUTS = ("fim_property.json", "summary.json")


def run(cfg: Config, out: Path) -> dict:
    timers = Timers()
    targets = targets_of(cfg.target.properties, cfg.target.lammps.executable)
    with timers("fim_property"):
        result = property_fim(potential_of(cfg.potential), parameters.parse(cfg.potential.parameters_optimize),
                              transform_of(cfg.potential.transform), derivative_of(cfg.target.derivative), targets)
    data = {FIM_PROPERTY_SCORE.key: result.fim.tolist(), "jacobian": result.jacobian.tolist(),
            "values": dict(zip(result.value_labels, result.values.tolist())), "labels": result.labels,
            "covariances": {t.name: c.tolist() for t, c in zip(targets, result.covariances)}}
    counts = {"properties": len(targets), "values": len(result.values), "parameters": len(result.labels)}
    params = {"potential": as_dict(cfg.potential), "target": as_dict(cfg.target)}
    with staged([out / name for name in OUTPUTS]) as (t_json, t_summary):
        t_json.write_bytes(json_bytes(data))
        done = write_summary(t_summary, "fim_property", params, counts, timers, {"values": data["values"], "model": result.model})
    return done


def main() -> None:
    stage_main("fim_property", run, "outputs/fim_property")


if __name__ == "__main__":
    main()
