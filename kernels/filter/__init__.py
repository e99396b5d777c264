"""Filter kernels: DART-convention EAKF/EnKF maths (``eakf``) and the serial observation loop with
its spatial index (``serial``). Pure numba functions over arrays; no MPI, files or configuration."""

from kernels.filter.eakf import (counter_normal, counter_uniform, ens_mean_var, gaspari_cohn,
                                 obs_increment_eakf, obs_increment_enkf, regress_update)

__all__ = ["counter_normal", "counter_uniform", "ens_mean_var", "gaspari_cohn", "obs_increment_eakf",
           "obs_increment_enkf", "regress_update"]
