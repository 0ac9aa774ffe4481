"""``kubectl swa``: a kubectl plugin to look at StatefulWebApps, list and restore their archives.

Installed with the package as the console script ``kubectl-swa`` (kubectl runs any
``kubectl-<name>`` on PATH as ``kubectl <name>``); also ``python -m statefulwebapp.plugin``.
It talks to the cluster through the official ``kubernetes`` client, and only ``kube.py``
imports that client. Nothing of the operator imports this package: the operator's process
never loads the client.

Layers, each importing only those before it:

- ``errors.py``: what can go wrong, said for a person (no request, no client);
- ``archives.py``, ``render.py``, ``report.py``: pure: the archive listing's command and its
  parser, the status and progress text, the support bundle's files and their redaction;
- ``gather.py``: what a command reads, through the ``Source`` protocol (a fake in the tests);
- ``kube.py``: ``Source`` on the official client (config, requests, watch, logs, exec);
- ``cli.py``: the command line.
"""
