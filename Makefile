# The two README commands. Each installs what is missing first.
.PHONY: demo overlays test bench bootstrap

bootstrap:
	@./scripts/bootstrap.sh

demo: bootstrap
	@node bin/chorus.js demo

# the Large Scale Design on this machine: two cells and a centre, one command
overlays: bootstrap
	@node bin/chorus.js demo --overlays

test: bootstrap
	@npm test

bench: bootstrap
	@node bench/run.js
