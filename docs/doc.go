// Package docs holds the project's documentation (design, operations,
// benchmarks) and the tests that keep it and README.md in shape.
package docs
