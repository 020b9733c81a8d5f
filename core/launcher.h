// The process's place in the job as the launcher (mpirun, mpiexec, srun) announces it in the
// environment, readable before MPI starts: Open MPI's OMPI_COMM_WORLD_SIZE / _RANK, MPICH/Hydra's
// PMI_SIZE / PMI_RANK, PMIx's PMIX_SIZE / PMIX_RANK, in that order. Outside a launcher: one rank, 0.
#pragma once

namespace llamarl {

// The number of ranks the launcher started (>= 1).
int LauncherWorldSize();
// This process's rank among them (0 outside a launcher).
int LauncherWorldRank();

}  // namespace llamarl
