/* The SFU's hot path in C.
 *
 * fan_out: protect one RTP packet for many receivers and send every copy with
 * sendmmsg, one system call per batch.
 *
 * send_each: protect many RTP packets for one receiver (the answer to a NACK) and
 * send them the same way.
 *
 * drain: read a batch of datagrams with recvmmsg and forward, without Python,
 * each RTP packet whose (source address, SSRC) the SFU put in its table of known
 * routes: unprotect it, fan it out, and hand Python a short record for its
 * bookkeeping (reception statistics, the NACK cache). Everything else (STUN, DTLS,
 * RTCP, a stream not in the table, a sender the host has blocked) goes back to
 * Python as it came.
 *
 * Python hands over libsrtp's own srtp_protect, srtp_protect_rtcp and
 * srtp_unprotect (taken from pylibsrtp, so there is one libsrtp and one key
 * schedule per session) and, per receiver, the address of its srtp_t and a packed
 * sockaddr (a third item, the session itself, only keeps the srtp_t alive).
 * confide/sfu/fanout.py holds the pure-Python path that does the same thing, for
 * machines where this does not build.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define BATCH 64
#define TRAILER 148 /* libsrtp's SRTP_MAX_TRAILER_LEN */
#define SLOT 2304   /* the SFU's largest datagram (2048) plus the trailer, rounded up */
#define MAX_SRTP 1500 /* pylibsrtp unprotects no more: larger ones go to Python, which drops them */
#define RECEIVE_BATCH 32

typedef int (*protect_fn)(void *context, void *packet, int *length);

static protect_fn protect = NULL, protect_rtcp = NULL, unprotect = NULL;
static PyObject *all_sent = NULL; /* (0, 0), returned as is: most calls lose nothing */
static unsigned char slots[BATCH][SLOT];
static struct iovec vectors[BATCH];
static struct mmsghdr messages[BATCH];

static unsigned char inbox[RECEIVE_BATCH][SLOT];
static struct sockaddr_storage senders[RECEIVE_BATCH];
static struct iovec inbox_vectors[RECEIVE_BATCH];
static struct mmsghdr inbox_messages[RECEIVE_BATCH];

static PyObject *set_protect(PyObject *module, PyObject *args) {
    PyObject *given[3];
    void *pointers[3];
    if (!PyArg_ParseTuple(args, "OOO", &given[0], &given[1], &given[2])) return NULL;
    for (int i = 0; i < 3; i++) {
        pointers[i] = PyLong_AsVoidPtr(given[i]);
        if (pointers[i] == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "null function");
            return NULL;
        }
    }
    protect = (protect_fn)pointers[0];
    protect_rtcp = (protect_fn)pointers[1];
    unprotect = (protect_fn)pointers[2];
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

/* Copy `length` bytes at `packet` into slot `index`, protect them in place, and
 * make message `index` send that slot to the packed sockaddr `address`.
 * Returns -1 (and queues nothing) if the copy could not be protected. */
static int queue_copy(int index, const unsigned char *packet, int length, protect_fn apply,
                      void *context, PyObject *address) {
    unsigned char *slot = slots[index];
    int protected_length = length;
    memcpy(slot, packet, (size_t)length);
    if (apply(context, slot, &protected_length) != 0) return -1;
    vectors[index].iov_base = slot;
    vectors[index].iov_len = (size_t)protected_length;
    memset(&messages[index], 0, sizeof messages[index]);
    messages[index].msg_hdr.msg_name = PyBytes_AS_STRING(address);
    messages[index].msg_hdr.msg_namelen = (socklen_t)PyBytes_GET_SIZE(address);
    messages[index].msg_hdr.msg_iov = &vectors[index];
    messages[index].msg_hdr.msg_iovlen = 1;
    return 0;
}

/* Protect `length` bytes at `packet` for each target and send the copies;
 * adds to *failed (could not protect) and *dropped (could not send). */
static void send_copies(int fd, const unsigned char *packet, int length, protect_fn apply,
                        PyObject *sequence, Py_ssize_t *failed, Py_ssize_t *dropped) {
    Py_ssize_t total = PySequence_Fast_GET_SIZE(sequence);
    PyObject **items = PySequence_Fast_ITEMS(sequence);
    int count = 0;
    for (Py_ssize_t i = 0; i < total; i++) {
        PyObject *target = items[i];
        if (!PyTuple_Check(target) || PyTuple_GET_SIZE(target) < 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(target, 1))) {
            (*failed)++;
            continue;
        }
        void *context = PyLong_AsVoidPtr(PyTuple_GET_ITEM(target, 0));
        if (context == NULL) {
            PyErr_Clear();
            (*failed)++;
            continue;
        }
        if (queue_copy(count, packet, length, apply, context, PyTuple_GET_ITEM(target, 1)) != 0) {
            (*failed)++;
            continue;
        }
        if (++count == BATCH) {
            *dropped += flush(fd, count);
            count = 0;
        }
    }
    if (count > 0) *dropped += flush(fd, count);
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
    Py_ssize_t failed = 0, dropped = 0;
    send_copies(fd, packet.buf, (int)packet.len, apply, sequence, &failed, &dropped);
    Py_DECREF(sequence);
    PyBuffer_Release(&packet);
    if (failed == 0 && dropped == 0) return Py_NewRef(all_sent);
    return Py_BuildValue("(nn)", failed, dropped);
}

/* Protect each packet of `packets` for the one receiver `target` (as prepared by
 * fanout.py: srtp_t address, packed sockaddr) and send them in batches. */
static PyObject *send_each(PyObject *module, PyObject *args) {
    int fd;
    PyObject *packets, *target;
    if (!PyArg_ParseTuple(args, "iOO", &fd, &packets, &target)) return NULL;
    if (protect == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_protect has not been called");
        return NULL;
    }
    if (!PyTuple_Check(target) || PyTuple_GET_SIZE(target) < 2 ||
        !PyBytes_Check(PyTuple_GET_ITEM(target, 1))) {
        PyErr_SetString(PyExc_TypeError, "target must be (srtp_t address, packed sockaddr, ...)");
        return NULL;
    }
    void *context = PyLong_AsVoidPtr(PyTuple_GET_ITEM(target, 0));
    if (context == NULL) return NULL;
    PyObject *address = PyTuple_GET_ITEM(target, 1);
    PyObject *sequence = PySequence_Fast(packets, "packets must be a sequence");
    if (sequence == NULL) return NULL;
    Py_ssize_t total = PySequence_Fast_GET_SIZE(sequence);
    PyObject **items = PySequence_Fast_ITEMS(sequence);
    Py_ssize_t failed = 0, dropped = 0;
    int count = 0;
    for (Py_ssize_t i = 0; i < total; i++) {
        PyObject *packet = items[i];
        Py_ssize_t length;
        if (!PyBytes_Check(packet) || (length = PyBytes_GET_SIZE(packet)) < 12 ||
            length > SLOT - TRAILER) {
            failed++;
            continue;
        }
        if (queue_copy(count, (const unsigned char *)PyBytes_AS_STRING(packet), (int)length,
                       protect, context, address) != 0) {
            failed++;
            continue;
        }
        if (++count == BATCH) {
            dropped += flush(fd, count);
            count = 0;
        }
    }
    if (count > 0) dropped += flush(fd, count);
    Py_DECREF(sequence);
    if (failed == 0 && dropped == 0) return Py_NewRef(all_sent);
    return Py_BuildValue("(nn)", failed, dropped);
}

/* The sender's address as Python's socket module gives it: (host, port). */
static PyObject *address_tuple(const struct sockaddr_storage *name) {
    char host[INET6_ADDRSTRLEN];
    int port;
    if (name->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)name;
        if (inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host) == NULL) return NULL;
        port = ntohs(v4->sin_port);
    } else if (name->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)name;
        if (inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host) == NULL) return NULL;
        port = ntohs(v6->sin6_port);
    } else {
        PyErr_SetString(PyExc_ValueError, "unknown address family");
        return NULL;
    }
    return Py_BuildValue("(si)", host, port);
}

static double monotonic_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* A route entry is (srtp_t address of the sender's inbound session, prepared
 * targets, stream, the sender's blocked-kinds set, keep the plain packet (a bool),
 * and anything that keeps the srtp_t alive). Returns the srtp_t, or NULL when the
 * entry is not usable as one (then Python decides). */
static void *route_context(PyObject *entry) {
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) < 5 ||
        !PyLong_Check(PyTuple_GET_ITEM(entry, 0)) || !PyList_Check(PyTuple_GET_ITEM(entry, 1)) ||
        !PyAnySet_Check(PyTuple_GET_ITEM(entry, 3)) || !PyBool_Check(PyTuple_GET_ITEM(entry, 4)))
        return NULL;
    void *context = PyLong_AsVoidPtr(PyTuple_GET_ITEM(entry, 0));
    if (context == NULL) PyErr_Clear();
    return context;
}

/* Forward one datagram by its route entry. Returns the record for Python, or
 * NULL: with *unauthentic set when the packet did not unprotect, else with a
 * Python error (only memory) for the caller to clear. */
static PyObject *forward_known(int fd, unsigned char *data, int length, PyObject *entry,
                               void *context, double now, Py_ssize_t *copies,
                               Py_ssize_t *failed, Py_ssize_t *dropped, int *unauthentic) {
    int plain_length = length;
    if (unprotect(context, data, &plain_length) != 0 || plain_length < 12) {
        *unauthentic = 1;
        return NULL;
    }
    PyObject *targets = PyTuple_GET_ITEM(entry, 1);
    send_copies(fd, data, plain_length, protect, targets, failed, dropped);
    *copies += PyList_GET_SIZE(targets);
    PyObject *plain;
    if (PyTuple_GET_ITEM(entry, 4) == Py_True) {
        plain = PyBytes_FromStringAndSize((const char *)data, plain_length);
        if (plain == NULL) return NULL;
    } else {
        plain = Py_NewRef(Py_None);
    }
    unsigned int sequence_number = ((unsigned int)data[2] << 8) | data[3];
    unsigned long timestamp = ((unsigned long)data[4] << 24) | ((unsigned long)data[5] << 16) |
                              ((unsigned long)data[6] << 8) | data[7];
    return Py_BuildValue("(OIkiNd)", PyTuple_GET_ITEM(entry, 2), sequence_number, timestamp,
                         plain_length, plain, now);
}

/* The route entry for an RTP datagram, or NULL (borrowed; NULL also on a Python
 * error, cleared: the datagram then goes to Python). */
static PyObject *route_of(PyObject *routes, const unsigned char *data, int length,
                          const struct sockaddr_storage *sender, socklen_t name_length) {
    if (length < 12 || length > MAX_SRTP || data[0] < 128 || data[0] >= 192 ||
        (data[1] >= 192 && data[1] <= 223) || name_length > sizeof(struct sockaddr_storage))
        return NULL;
    unsigned char key[sizeof(struct sockaddr_storage) + 4];
    memcpy(key, sender, name_length);
    memcpy(key + name_length, data + 8, 4);
    PyObject *lookup = PyBytes_FromStringAndSize((const char *)key, name_length + 4);
    if (lookup == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *entry = PyDict_GetItemWithError(routes, lookup);
    Py_DECREF(lookup);
    if (entry == NULL) PyErr_Clear();
    return entry;
}

/* Hand a datagram to Python as (data, (host, port), now); 0 if it could not be. */
static int hand_over(PyObject *others, const unsigned char *data, Py_ssize_t length,
                     const struct sockaddr_storage *sender, double now) {
    PyObject *address = address_tuple(sender);
    if (address == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyObject *other = Py_BuildValue("(y#Nd)", (const char *)data, length, address, now);
    if (other == NULL) {
        PyErr_Clear();
        return 0;
    }
    int appended = PyList_Append(others, other);
    Py_DECREF(other);
    if (appended < 0) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static PyObject *drain(PyObject *module, PyObject *args) {
    int fd;
    PyObject *routes;
    if (!PyArg_ParseTuple(args, "iO!", &fd, &PyDict_Type, &routes)) return NULL;
    if (protect == NULL || unprotect == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_protect has not been called");
        return NULL;
    }
    PyObject *records = PyList_New(0), *others = PyList_New(0);
    if (records == NULL || others == NULL) {
        Py_XDECREF(records);
        Py_XDECREF(others);
        return NULL;
    }
    for (int i = 0; i < RECEIVE_BATCH; i++) {
        inbox_vectors[i].iov_base = inbox[i];
        inbox_vectors[i].iov_len = SLOT - TRAILER;
        memset(&inbox_messages[i], 0, sizeof inbox_messages[i]);
        inbox_messages[i].msg_hdr.msg_name = &senders[i];
        inbox_messages[i].msg_hdr.msg_namelen = sizeof senders[i];
        inbox_messages[i].msg_hdr.msg_iov = &inbox_vectors[i];
        inbox_messages[i].msg_hdr.msg_iovlen = 1;
    }
    int received = recvmmsg(fd, inbox_messages, RECEIVE_BATCH, MSG_DONTWAIT, NULL);
    if (received < 0) received = 0; /* nothing after all, or a peer's ICMP error */
    Py_ssize_t copies = 0, failed = 0, dropped = 0, unauthentic = 0;
    /* STUN or DTLS may move an address or a key: from there on the batch goes to
     * Python in order, so that no route is used after the change that ends it. */
    int routes_may_change = 0;
    for (int i = 0; i < received; i++) {
        unsigned char *data = inbox[i];
        int length = (int)inbox_messages[i].msg_len;
        int truncated = inbox_messages[i].msg_hdr.msg_flags & MSG_TRUNC;
        double now = monotonic_now();
        PyObject *entry = NULL;
        void *context = NULL;
        if (!routes_may_change && !truncated)
            entry = route_of(routes, data, length, &senders[i],
                             inbox_messages[i].msg_hdr.msg_namelen);
        /* Blocked by the host, or not a usable entry: Python drops what it must. */
        if (entry != NULL && (context = route_context(entry)) != NULL &&
            PySet_GET_SIZE(PyTuple_GET_ITEM(entry, 3)) == 0) {
            Py_INCREF(entry);
            int bad = 0;
            PyObject *record = forward_known(fd, data, length, entry, context, now, &copies,
                                             &failed, &dropped, &bad);
            Py_DECREF(entry);
            if (record == NULL) {
                if (bad) unauthentic++;
                else {
                    PyErr_Clear();
                    failed++;
                }
                continue;
            }
            if (PyList_Append(records, record) < 0) {
                PyErr_Clear();
                failed++;
            }
            Py_DECREF(record);
            continue;
        }
        if (length > 0 && (data[0] < 4 || (data[0] >= 20 && data[0] < 64))) routes_may_change = 1;
        /* A truncated datagram keeps its oversize length, for Python to drop and count. */
        if (!hand_over(others, data, truncated ? SLOT - TRAILER : length, &senders[i], now))
            failed++;
    }
    return Py_BuildValue("(NNnnnn)", records, others, copies, failed, dropped, unauthentic);
}

static PyMethodDef methods[] = {
    {"set_protect", set_protect, METH_VARARGS,
     "set_protect(srtp_protect, srtp_protect_rtcp, srtp_unprotect), as addresses"},
    {"fan_out", fan_out, METH_VARARGS,
     "fan_out(fd, packet, [(srtp_t address, packed sockaddr), ...], rtcp=False)"
     " -> (failed, dropped)"},
    {"send_each", send_each, METH_VARARGS,
     "send_each(fd, [packet, ...], (srtp_t address, packed sockaddr, ...)) -> (failed, dropped)"},
    {"drain", drain, METH_VARARGS,
     "drain(fd, routes) -> (records, others, copies, failed, dropped, unauthentic): read up"
     " to 32 datagrams and forward those with a route; records are (stream, sequence"
     " number, timestamp, length, plain packet or None, now), others (data, (host, port),"
     " now)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fanout",
    "The SFU's hot path: forward known RTP streams, protect and send copies in batches.", -1, methods,
};

PyMODINIT_FUNC PyInit__fanout(void) {
    if (all_sent == NULL && (all_sent = Py_BuildValue("(nn)", (Py_ssize_t)0, (Py_ssize_t)0)) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
