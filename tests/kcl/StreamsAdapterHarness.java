// A KCL application on a DynamoDB table's stream through AWS's dynamodb-streams-kinesis-adapter
// (1.6, on KCL 1.14), for streamworker's migration tests: the real KCL + adapter writing the real
// lease table, with a processor that records what it sees as JSON lines (the events of
// tests/integration/recording_processor.py; "data" is the item's "id") and checkpoints after
// every batch.
//
//   java -cp 'classes:jars/*' StreamsAdapterHarness STREAM_ARN APP WORKER_ID RECORD_LOG DYNAMODB_URL
//
// SIGTERM starts KCL's graceful shutdown (shutdownRequested: checkpoint, release).

import java.io.FileWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.util.concurrent.TimeUnit;

import com.amazonaws.auth.AWSStaticCredentialsProvider;
import com.amazonaws.auth.BasicAWSCredentials;
import com.amazonaws.client.builder.AwsClientBuilder.EndpointConfiguration;
import com.amazonaws.services.cloudwatch.AmazonCloudWatch;
import com.amazonaws.services.cloudwatch.AmazonCloudWatchClientBuilder;
import com.amazonaws.services.dynamodbv2.AmazonDynamoDB;
import com.amazonaws.services.dynamodbv2.AmazonDynamoDBClientBuilder;
import com.amazonaws.services.dynamodbv2.AmazonDynamoDBStreams;
import com.amazonaws.services.dynamodbv2.AmazonDynamoDBStreamsClientBuilder;
import com.amazonaws.services.dynamodbv2.streamsadapter.AmazonDynamoDBStreamsAdapterClient;
import com.amazonaws.services.dynamodbv2.streamsadapter.StreamsWorkerFactory;
import com.amazonaws.services.dynamodbv2.streamsadapter.model.RecordAdapter;
import com.amazonaws.services.kinesis.clientlibrary.interfaces.v2.IRecordProcessor;
import com.amazonaws.services.kinesis.clientlibrary.interfaces.v2.IRecordProcessorFactory;
import com.amazonaws.services.kinesis.clientlibrary.interfaces.v2.IShutdownNotificationAware;
import com.amazonaws.services.kinesis.clientlibrary.interfaces.IRecordProcessorCheckpointer;
import com.amazonaws.services.kinesis.clientlibrary.lib.worker.InitialPositionInStream;
import com.amazonaws.services.kinesis.clientlibrary.lib.worker.KinesisClientLibConfiguration;
import com.amazonaws.services.kinesis.clientlibrary.lib.worker.ShutdownReason;
import com.amazonaws.services.kinesis.clientlibrary.lib.worker.Worker;
import com.amazonaws.services.kinesis.clientlibrary.types.InitializationInput;
import com.amazonaws.services.kinesis.clientlibrary.types.ProcessRecordsInput;
import com.amazonaws.services.kinesis.clientlibrary.types.ShutdownInput;
import com.amazonaws.services.kinesis.metrics.interfaces.MetricsLevel;
import com.amazonaws.services.kinesis.model.Record;

public class StreamsAdapterHarness {
    static PrintWriter log;
    static String worker;

    static synchronized void event(String ev, String shard, String extra) {
        log.println("{\"ev\": \"" + ev + "\", \"w\": \"" + worker + "\", \"shard\": \"" + shard + "\", \"t\": "
                + (System.currentTimeMillis() / 1000.0) + extra + "}");
        log.flush();
    }

    static class Recording implements IRecordProcessor, IShutdownNotificationAware {
        String shard;

        public void initialize(InitializationInput in) {
            shard = in.getShardId();
            event("init", shard, ", \"checkpoint\": \"" + in.getExtendedSequenceNumber().getSequenceNumber() + "\"");
        }

        public void processRecords(ProcessRecordsInput in) {
            for (Record r : in.getRecords()) {
                com.amazonaws.services.dynamodbv2.model.Record change = ((RecordAdapter) r).getInternalObject();
                String id = change.getDynamodb().getKeys().get("id").getS();
                event("rec", shard, ", \"seq\": \"" + r.getSequenceNumber() + "\", \"name\": \""
                        + change.getEventName() + "\", \"data\": \"" + id + "\"");
            }
            checkpoint(in.getCheckpointer());
        }

        void checkpoint(IRecordProcessorCheckpointer c) {
            try {
                c.checkpoint();
            } catch (Exception e) {
                event("checkpoint_refused", shard, ", \"error\": \"" + e.getClass().getSimpleName() + "\"");
            }
        }

        public void shutdownRequested(IRecordProcessorCheckpointer c) {
            checkpoint(c);
            event("shutdown_requested", shard, "");
        }

        public void shutdown(ShutdownInput in) {
            if (in.getShutdownReason() == ShutdownReason.TERMINATE) {
                checkpoint(in.getCheckpointer());
                event("shard_ended", shard, "");
            } else if (in.getShutdownReason() == ShutdownReason.ZOMBIE) {
                event("lease_lost", shard, "");
            }
        }
    }

    public static void main(String[] args) throws Exception {
        String streamArn = args[0], app = args[1], dynamodbUrl = args[4];
        worker = args[2];
        log = new PrintWriter(new FileWriter(args[3], true));
        AWSStaticCredentialsProvider creds = new AWSStaticCredentialsProvider(new BasicAWSCredentials("testing", "testing"));
        EndpointConfiguration endpoint = new EndpointConfiguration(dynamodbUrl, "us-east-1");
        AmazonDynamoDBStreams streams = AmazonDynamoDBStreamsClientBuilder.standard().withEndpointConfiguration(endpoint)
                .withCredentials(creds).build();
        AmazonDynamoDB dynamodb = AmazonDynamoDBClientBuilder.standard().withEndpointConfiguration(endpoint)
                .withCredentials(creds).build();
        AmazonCloudWatch cloudwatch = AmazonCloudWatchClientBuilder.standard().withEndpointConfiguration(endpoint)
                .withCredentials(creds).build();
        KinesisClientLibConfiguration config = new KinesisClientLibConfiguration(app, streamArn, creds, worker)
                .withInitialPositionInStream(InitialPositionInStream.TRIM_HORIZON)
                .withMetricsLevel(MetricsLevel.NONE)
                .withFailoverTimeMillis(Long.getLong("failover", 5000L))
                .withIdleTimeBetweenReadsInMillis(250)
                .withParentShardPollIntervalMillis(500)
                .withShardSyncIntervalMillis(2000);
        IRecordProcessorFactory factory = Recording::new;
        Worker w = StreamsWorkerFactory.createDynamoDbStreamsWorker(factory, config,
                new AmazonDynamoDBStreamsAdapterClient(streams), dynamodb, cloudwatch);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                w.startGracefulShutdown().get(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                w.shutdown();
            }
        }));
        w.run();
    }
}
