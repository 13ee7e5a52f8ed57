/*
 * icmp-echo ADDRESS: one ICMP (IPv4) or ICMPv6 echo request through an unprivileged ping
 * socket, for the test images: busybox's ping needs a raw socket, which a sandbox never has.
 * Prints "reply" and exits 0 on an answer within two seconds; exits 1 without one (or when
 * the send is refused), 2 when no ping socket can be made.
 */
#include <arpa/inet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    struct sockaddr *to;
    socklen_t to_len;
    unsigned char packet[16];
    int family, protocol, fd;

    if (argc != 2) {
        fprintf(stderr, "usage: icmp-echo ADDRESS\n");
        return 2;
    }
    memset(&v4, 0, sizeof v4);
    memset(&v6, 0, sizeof v6);
    memset(packet, 0, sizeof packet);
    if (inet_pton(AF_INET, argv[1], &v4.sin_addr) == 1) {
        v4.sin_family = AF_INET;
        to = (struct sockaddr *)&v4;
        to_len = sizeof v4;
        family = AF_INET;
        protocol = IPPROTO_ICMP;
        packet[0] = ICMP_ECHO;
    } else if (inet_pton(AF_INET6, argv[1], &v6.sin6_addr) == 1) {
        v6.sin6_family = AF_INET6;
        to = (struct sockaddr *)&v6;
        to_len = sizeof v6;
        family = AF_INET6;
        protocol = IPPROTO_ICMPV6;
        packet[0] = ICMP6_ECHO_REQUEST;
    } else {
        fprintf(stderr, "icmp-echo: not an address: %s\n", argv[1]);
        return 2;
    }
    /* The kernel fills in the identifier and the checksum of a ping socket's packets. */
    fd = socket(family, SOCK_DGRAM, protocol);
    if (fd < 0) {
        perror("icmp-echo: socket");
        return 2;
    }
    if (sendto(fd, packet, sizeof packet, 0, to, to_len) < 0) {
        perror("icmp-echo: sendto");
        return 1;
    }
    struct pollfd ready = {.fd = fd, .events = POLLIN};
    if (poll(&ready, 1, 2000) == 1 && recv(fd, packet, sizeof packet, 0) > 0) {
        puts("reply");
        return 0;
    }
    puts("no reply");
    return 1;
}
