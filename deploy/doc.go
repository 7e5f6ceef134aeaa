// Package deploy holds no code. Its tests check the deployment files of
// the repository, which cannot run where the tests run (no Docker engine):
// that docker-compose.yml has the services, images, published ports,
// profiles and config mounts the README's "Docker" table lists, that what
// it mounts and starts exists, and that the Dockerfile builds and installs
// the binaries the Makefile's build target makes, from the same packages.
//
// Files:
//
//	files_test.go      the repository files a check reads, and the check of them all
//	readme_test.go     the README's Docker table
//	compose_test.go    docker-compose.yml, and its checks against the table
//	dockerfile_test.go the Dockerfile and the Makefile's build target, and their checks
//	drift_test.go      each check fails on a mutated copy of the files
package deploy
