"""The study: Optuna storage, identity, and recovery of trials whose worker died.

The study lives in Optuna storage: a journal file by default (``<out>/study.journal``, safe
for several processes on one machine, or on several that share the folder), or any RDB URL
(``sqlite:///...``, ``postgresql://...``). Finished trials are in the storage, so a resumed
study never runs them again. A worker killed with -9 leaves its trial RUNNING for ever (the
journal has no heartbeats), so each worker stamps its trials with its host, pid and process
start time and beats a heartbeat after every task; the next worker to start fails a trial
whose owner is gone, or whose heartbeat is older than ``stale_after_s``, and enqueues its
parameters again. The evaluation cache makes that retry re-evaluate nothing already done.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

from flowmend import _lifeline
from flowmend.errors import UserError

STUDY_NAME = "flowmend-meta"
OWNER = "owner"  # trial user attr: {"host", "pid", "start"}
HEARTBEAT = "heartbeat"  # trial user attr: wall-clock seconds of the last beat
RETRY_OF = "retry_of"


def storage_for(spec: str | None, out: Path):
    """Optuna storage from ``--storage``: None is a journal file in `out`; a URL with ``://``
    is an RDB; anything else is a journal file path."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if spec and "://" in spec:
        try:
            return RDBStorage(spec)
        except Exception as err:  # noqa: BLE001 - SQLAlchemy's errors are many; one line each
            raise UserError(f"cannot open the study storage: {str(err).splitlines()[0]}",
                            where="--storage") from None
    path = Path(spec) if spec else out / "study.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def open_study(storage, identity: dict[str, Any], *, seed: int):
    """Create the study or load it; a study made with another identity is refused.

    The sampler is TPE; cost is a constraint each trial sets (`Trial.set_constraint`): a trial
    whose mean spend per task passes the cap is infeasible. The pruner is Wilcoxon's
    signed-rank test on per-task utility, paired with the best trial on the same tasks.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        pruner = optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=4)
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, sampler=sampler,
                                pruner=pruner, direction="maximize", load_if_exists=True)
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", identity)
    elif stored != identity:
        changed = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
        raise UserError(f"the study was made with other settings ({', '.join(changed)}); use "
                        "another --out or --storage, or the same arguments to resume it")
    return study


def own(trial) -> None:
    """Stamp `trial` as this process's, with a first heartbeat."""
    owner = {"host": socket.gethostname(), "pid": os.getpid(),
             "start": _lifeline.start_time(os.getpid())}
    trial.set_user_attr(OWNER, owner)
    beat(trial)


def beat(trial) -> None:
    trial.set_user_attr(HEARTBEAT, time.time())


def recover_stale(study, *, stale_after_s: float) -> list[int]:
    """Fail every RUNNING trial whose worker is gone and enqueue its parameters again;
    returns their numbers."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(OWNER)
        last = t.user_attrs.get(HEARTBEAT, 0.0)
        gone = isinstance(owner, dict) and owner.get("host") == host \
            and not _lifeline.alive(int(owner.get("pid", -1)), owner.get("start"))
        if gone or time.time() - float(last) > stale_after_s:
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(dict(t.params), user_attrs={RETRY_OF: t.number},
                                skip_if_exists=False)
            recovered.append(t.number)
    return recovered
