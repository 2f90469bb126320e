"""The core every engine reads: sufficient statistics, the blocked Cholesky, the data
scaling, and the seams for covariance structures, residual structures and families.

See docs/design.md ("The core and its seams")."""
