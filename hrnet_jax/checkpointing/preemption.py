"""SIGTERM and Ctrl-C (SIGINT) as a request to checkpoint at a step every process agrees on.

One process: the handlers set a flag the training loop polls once per step.

Several processes (jax.distributed): a per-process flag is a hazard, since the hosts
would enter the collective save at different steps and hang. JAX's preemption sync
manager owns SIGTERM there: the notice of any host is propagated through the
coordination service and `reached_preemption_sync_point(step)` becomes True on every
host at the same step (the maximum step any host had reported, plus one). Ctrl-C is
forwarded to that mechanism by re-sending SIGTERM to this process. The loop must call
`reached(step)` at every step, as JAX requires.

A second Ctrl-C while the checkpoint is being written stops at once (KeyboardInterrupt).
"""
from __future__ import annotations

import os
import signal
import threading

from absl import logging


def _sync_manager_available() -> bool:
  try:
    from jax._src import distributed  # pylint: disable=g-import-not-at-top
    return distributed.global_state.preemption_sync_manager is not None
  except (ImportError, AttributeError):
    return False


class PreemptionWatch:
  """Polled once per step: `reached(step)` is True at the step to save and stop at."""

  def __init__(self):
    import jax  # pylint: disable=g-import-not-at-top
    self.requested = None          # name of the signal that asked for the stop
    self._synced = jax.process_count() > 1 and _sync_manager_available()
    self._previous = {}
    self._answers = {}             # step -> answer: JAX wants one report per step
    if threading.current_thread() is not threading.main_thread():
      return                       # signal handlers can only be set in the main thread
    signals = (signal.SIGINT,) if self._synced else (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
      self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.requested is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt      # second Ctrl-C: the user does not want to wait
    self.requested = name
    logging.warning('%s received: a checkpoint will be written at the next step every '
                    'process agrees on, then the run stops (Ctrl-C again to abort).', name)
    if self._synced:
      # JAX's notifier listens for SIGTERM only; it propagates the notice to all hosts.
      os.kill(os.getpid(), signal.SIGTERM)

  def reached(self, step: int) -> bool:
    """True at the step where every process saves and stops (call it at every step)."""
    if step in self._answers:
      return self._answers[step]
    if self._synced:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      answer = bool(multihost_utils.reached_preemption_sync_point(step))
      if answer and self.requested is None:
        self.requested = 'SIGTERM'   # another host was preempted
    else:
      answer = self.requested is not None
    self._answers = {step: answer}
    return answer

  def close(self) -> None:
    """Puts the previous handlers back."""
    for sig, previous in self._previous.items():
      if previous is not None:
        signal.signal(sig, previous)
    self._previous = {}
