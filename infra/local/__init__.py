"""The local stack (`make run`) by responsibility: options, processes, bootstrap, report, stack."""
