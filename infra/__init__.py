"""Infrastructure: the CloudFormation merge template and the offline emulation built from it."""
