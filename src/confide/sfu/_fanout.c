/* The SFU's hot path in C: protect one RTP packet for many receivers and send
 * every copy with sendmmsg, one system call per batch.
 *
 * Python hands over libsrtp's own srtp_protect and srtp_protect_rtcp (taken from
 * pylibsrtp, so there is
 * one libsrtp and one key schedule per session) and, per receiver, the address of
 * its srtp_t and a packed sockaddr (a third item, the session itself, only keeps
 * the srtp_t alive). confide/sfu/fanout.py holds the pure-Python
 * path that does the same thing, for machines where this does not build.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64
#define TRAILER 148 /* libsrtp's SRTP_MAX_TRAILER_LEN */
#define SLOT 2304   /* the SFU's largest datagram (2048) plus the trailer, rounded up */

typedef int (*protect_fn)(void *context, void *packet, int *length);

static protect_fn protect = NULL, protect_rtcp = NULL;
static PyObject *all_sent = NULL; /* (0, 0), returned as is: most calls lose nothing */
static unsigned char slots[BATCH][SLOT];
static struct iovec vectors[BATCH];
static struct mmsghdr messages[BATCH];

static PyObject *set_protect(PyObject *module, PyObject *args) {
    PyObject *rtp, *rtcp;
    if (!PyArg_ParseTuple(args, "OO", &rtp, &rtcp)) return NULL;
    void *rtp_pointer = PyLong_AsVoidPtr(rtp);
    if (rtp_pointer == NULL && PyErr_Occurred()) return NULL;
    void *rtcp_pointer = PyLong_AsVoidPtr(rtcp);
    if (rtcp_pointer == NULL && PyErr_Occurred()) return NULL;
    protect = (protect_fn)rtp_pointer;
    protect_rtcp = (protect_fn)rtcp_pointer;
    Py_RETURN_NONE;
}

/* Send slots [0, count); returns how many could not be sent. sendmmsg stops at
 * the first message that fails: a full socket buffer drops the rest of the batch
 * (UDP drops, so do we), but an error of that one destination (a port-0 or
 * broadcast address, a firewall rule, no route) costs only its own message. */
static Py_ssize_t flush(int fd, int count) {
    int done = 0;
    Py_ssize_t dropped = 0;
    while (done < count) {
        int sent = sendmmsg(fd, messages + done, (unsigned int)(count - done), MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                return dropped + (count - done);
            dropped++;
            done++;
            continue;
        }
        done += sent;
    }
    return dropped;
}

static PyObject *fan_out(PyObject *module, PyObject *args) {
    int fd;
    Py_buffer packet;
    PyObject *targets;
    int rtcp = 0;
    if (!PyArg_ParseTuple(args, "iy*O|p", &fd, &packet, &targets, &rtcp)) return NULL;
    protect_fn apply = rtcp ? protect_rtcp : protect;
    if (apply == NULL) {
        PyBuffer_Release(&packet);
        PyErr_SetString(PyExc_RuntimeError, "set_protect has not been called");
        return NULL;
    }
    if (packet.len < (rtcp ? 8 : 12) || packet.len > SLOT - TRAILER) {
        PyBuffer_Release(&packet);
        PyErr_SetString(PyExc_ValueError, "RTP or RTCP packet length out of range");
        return NULL;
    }
    PyObject *sequence = PySequence_Fast(targets, "targets must be a sequence");
    if (sequence == NULL) {
        PyBuffer_Release(&packet);
        return NULL;
    }
    Py_ssize_t total = PySequence_Fast_GET_SIZE(sequence);
    PyObject **items = PySequence_Fast_ITEMS(sequence);
    Py_ssize_t failed = 0, dropped = 0;
    int count = 0;
    for (Py_ssize_t i = 0; i < total; i++) {
        PyObject *target = items[i];
        if (!PyTuple_Check(target) || PyTuple_GET_SIZE(target) < 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(target, 1))) {
            failed++;
            continue;
        }
        void *context = PyLong_AsVoidPtr(PyTuple_GET_ITEM(target, 0));
        if (context == NULL) {
            PyErr_Clear();
            failed++;
            continue;
        }
        PyObject *address = PyTuple_GET_ITEM(target, 1);
        unsigned char *slot = slots[count];
        int length = (int)packet.len;
        memcpy(slot, packet.buf, (size_t)packet.len);
        if (apply(context, slot, &length) != 0) {
            failed++;
            continue;
        }
        vectors[count].iov_base = slot;
        vectors[count].iov_len = (size_t)length;
        memset(&messages[count], 0, sizeof messages[count]);
        messages[count].msg_hdr.msg_name = PyBytes_AS_STRING(address);
        messages[count].msg_hdr.msg_namelen = (socklen_t)PyBytes_GET_SIZE(address);
        messages[count].msg_hdr.msg_iov = &vectors[count];
        messages[count].msg_hdr.msg_iovlen = 1;
        if (++count == BATCH) {
            dropped += flush(fd, count);
            count = 0;
        }
    }
    if (count > 0) dropped += flush(fd, count);
    Py_DECREF(sequence);
    PyBuffer_Release(&packet);
    if (failed == 0 && dropped == 0) return Py_NewRef(all_sent);
    return Py_BuildValue("(nn)", failed, dropped);
}

static PyMethodDef methods[] = {
    {"set_protect", set_protect, METH_VARARGS,
     "set_protect(srtp_protect address, srtp_protect_rtcp address)"},
    {"fan_out", fan_out, METH_VARARGS,
     "fan_out(fd, packet, [(srtp_t address, packed sockaddr), ...], rtcp=False)"
     " -> (failed, dropped)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fanout",
    "Protect one RTP packet per receiver and send the copies in batches.", -1, methods,
};

PyMODINIT_FUNC PyInit__fanout(void) {
    if (all_sent == NULL && (all_sent = Py_BuildValue("(nn)", (Py_ssize_t)0, (Py_ssize_t)0)) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
