/*
 * Status codes shared by every kernel and by the device runtime ABI.
 *
 * 0 is success; every failure is a distinct negative value so that a lane's
 * status in a batch says exactly why that lane failed. Functions that return
 * a status zero their outputs on failure: callers never see partial results.
 */
#ifndef PQC_STATUS_H
#define PQC_STATUS_H

#define PQC_OK 0
#define PQC_ERR_INVALID_ARG (-1)       /* null pointer, unknown parameter set */
#define PQC_ERR_INVALID_LENGTH (-2)    /* a buffer of the wrong size */
#define PQC_ERR_INVALID_KEY (-3)       /* FIPS 203 7.2/7.3 checks, bad sk */
#define PQC_ERR_INVALID_SIGNATURE (-4) /* verification failed */
#define PQC_ERR_INVALID_CONTEXT (-5)   /* ML-DSA context over 255 bytes */
#define PQC_ERR_NO_MEMORY (-6)
#define PQC_ERR_DEVICE (-7)  /* runtime: device lost or faulted */
#define PQC_ERR_TIMEOUT (-8) /* runtime: launch exceeded deadline */
#define PQC_ERR_BUSY (-9)    /* runtime: resource in use */

#endif
