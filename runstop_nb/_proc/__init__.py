"""The process layer: finding, signalling and containing an agent's process tree.

Everything here uses the standard library only, because it runs in three places: in the
kernel, and in the per-kernel warden and the per-run guard processes, which import this
package as a top-level ``_proc`` (see ``spawn_warden``) so that runstop_nb's package
initialisation, which needs IPython and widgets, never loads there.

Modules, bottom up:

* ``procfs``: reading Linux's /proc (identity, parentage, environment markers, trees);
* ``pinned``: signals that reach exactly the process that was listed (pidfd);
* ``cgroup``: cgroup v2 groups, where the machine allows them;
* ``trees``: what "the run's processes" means in each situation, and when they are all gone;
* ``ladder``: the one stop ladder, run over any tree, and its ``Verdict``;
* ``wire``: the messages between the kernel, the warden and the guards;
* ``guard`` and ``warden``: the two helper processes.

See docs/ARCHITECTURE.md and docs/stopping.md.
"""
