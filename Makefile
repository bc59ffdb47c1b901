# The two README commands. Each installs what is missing first.
.PHONY: demo test bench bootstrap

bootstrap:
	@./scripts/bootstrap.sh

demo: bootstrap
	@node bin/chorus.js demo

test: bootstrap
	@npm test

bench: bootstrap
	@node bench/run.js
